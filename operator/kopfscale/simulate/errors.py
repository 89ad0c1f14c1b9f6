"""The one error type of the simulator: bad input (manifest, trace, options), shown as is, exit 2."""

from __future__ import annotations


class InputError(Exception):
    """A manifest, trace or option the simulator cannot use; the message names the file, line and field."""
