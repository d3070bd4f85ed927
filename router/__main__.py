"""`python -m router` is the `byoa` command."""

from router.cli import main

main(prog_name="byoa")
