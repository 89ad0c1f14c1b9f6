"""The operand: the greeting web server a Greeter's Pods run (``kopfscale greet``).

It lives beside the operator package, not inside it, because it is a different program that only
shares the image: the operator never imports it, and it imports nothing of the operator.
"""
