#!/usr/bin/env bash
# Build the local control plane from the official Go modules, once per pinned version.
#
# Binaries land in ~/.cache/kopfscale/<component>-<version>/bin/ and are reused while that
# folder is complete, so only a cold machine pays the build. Usage: build.sh [component...]
# (default: all). Components: kubernetes etcd kwok helm metrics-server keda.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache_root="${KOPFSCALE_CACHE:-$HOME/.cache/kopfscale}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED=0

command -v go >/dev/null || { echo "build.sh: the Go toolchain is required (go not on PATH)" >&2; exit 1; }

# One build at a time: concurrent callers (two test runs, make targets) wait, then reuse the result.
mkdir -p "$cache_root"
exec 9>"$cache_root/.build.lock"
flock 9

log() { printf '[controlplane-build] %s\n' "$*" >&2; }

# build_component NAME VERSION "pkg..." [go.mod extra lines]
build_component() {
    local name="$1" version="$2" pkgs="$3" extra="${4:-}" ldflags="${5:-}"
    local dest="$cache_root/$name-$version"
    if [[ -f "$dest/.complete" ]]; then
        log "$name $version: cached in $dest"
        return 0
    fi
    log "$name $version: building (cold) into $dest"
    local start=$SECONDS work
    work="$(mktemp -d)"
    printf 'module kopfscale.dev/build/%s\n\ngo 1.24\n%s\n' "$name" "$extra" > "$work/go.mod"
    local pinned=() pkg
    for pkg in $pkgs; do pinned+=("$pkg@$version"); done
    (cd "$work" && go get "${pinned[@]}")
    mkdir -p "$dest/bin"
    # shellcheck disable=SC2086
    (cd "$work" && go build -trimpath -ldflags "-s -w $ldflags" -o "$dest/bin/" $pkgs)
    rm -rf "$work"
    echo "$((SECONDS - start))" > "$dest/build-seconds"
    touch "$dest/.complete"
    log "$name $version: built in $((SECONDS - start)) s"
}

kubernetes_replaces() {
    # k8s.io/kubernetes lists its staging modules at v0.0.0; point each at its published release.
    local gomod
    gomod="$(cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
        | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    echo "replace ("
    grep -E '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$gomod" | awk -v v="$KUBERNETES_STAGING_VERSION" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
}

build_kubernetes() {
    local minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
    local ldflags="-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
    build_component kubernetes "$KUBERNETES_VERSION" \
        "k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl" \
        "$(kubernetes_replaces)" "$ldflags"
}

build_etcd() {
    # server/v3's root package is the etcd binary; its go.mod carries replaces we must not inherit.
    build_component etcd "$ETCD_VERSION" "go.etcd.io/etcd/server/v3"
    local bin="$cache_root/etcd-$ETCD_VERSION/bin"
    [[ -x "$bin/etcd" ]] || mv "$bin/server" "$bin/etcd"
}

build_kwok() { build_component kwok "$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwok"; }
build_helm() { build_component helm "$HELM_VERSION" "helm.sh/helm/v3/cmd/helm" "" "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"; }
build_metrics_server() { build_component metrics-server "$METRICS_SERVER_VERSION" "sigs.k8s.io/metrics-server/cmd/metrics-server"; }

module_file() {
    # module_file MODULE VERSION FIELD: a path `go mod download -json` reports (GoMod, Dir, ...).
    (cd "$(mktemp -d)" && go mod download -json "$1@$2" | sed -n "s/.*\"$3\": \"\(.*\)\".*/\1/p")
}

module_directives() {
    # The replace and exclude directives of a module's go.mod, which only bind its own builds:
    # a module built as a dependency must repeat them in the main module to build the same code.
    awk '
        /^(replace|exclude)[ \t]*\($/ { block = 1; print; next }
        block { print; if ($0 ~ /^\)/) block = 0; next }
        /^(replace|exclude)[ \t]/ { print }
    ' "$(module_file "$1" "$2" GoMod)"
}

build_keda() {
    # KEDA's operator and its metrics API server (the external.metrics.k8s.io adapter); its CRDs
    # and the RBAC of both come from the same module into <cache>/keda-<version>/{crds,rbac}/.
    local module=github.com/kedacore/keda/v2
    build_component keda "$KEDA_VERSION" "$module/cmd/operator $module/cmd/adapter" \
        "$(module_directives "$module" "$KEDA_VERSION")" "-X $module/version.Version=${KEDA_VERSION#v}"
    local dest="$cache_root/keda-$KEDA_VERSION"
    [[ -x "$dest/bin/keda" ]] || mv "$dest/bin/operator" "$dest/bin/keda"
    [[ -x "$dest/bin/keda-adapter" ]] || mv "$dest/bin/adapter" "$dest/bin/keda-adapter"
    local src
    if [[ ! -f "$dest/crds/.complete" || ! -f "$dest/rbac/.complete" ]]; then
        src="$(module_file "$module" "$KEDA_VERSION" Dir)"
        rm -rf "$dest/crds" "$dest/rbac"
        mkdir -p "$dest/crds" "$dest/rbac"
        cp "$src"/config/crd/bases/*.yaml "$dest/crds/"
        cp "$src/config/rbac/role.yaml" "$dest/rbac/operator-role.yaml"
        cp "$src/config/rbac/role_binding.yaml" "$dest/rbac/operator-role-binding.yaml"
        cp "$src/config/metrics-server/role.yaml" "$dest/rbac/metrics-server-role.yaml"
        cp "$src/config/metrics-server/role_binding.yaml" "$dest/rbac/metrics-server-role-binding.yaml"
        chmod u+w "$dest/crds"/*.yaml "$dest/rbac"/*.yaml
        touch "$dest/crds/.complete" "$dest/rbac/.complete"
    fi
}

components=("$@")
[[ ${#components[@]} -gt 0 ]] || components=(etcd kwok helm metrics-server kubernetes keda)
for c in "${components[@]}"; do
    case "$c" in
        kubernetes) build_kubernetes ;;
        etcd) build_etcd ;;
        kwok) build_kwok ;;
        helm) build_helm ;;
        metrics-server) build_metrics_server ;;
        keda) build_keda ;;
        *) echo "build.sh: unknown component '$c'" >&2; exit 2 ;;
    esac
done
