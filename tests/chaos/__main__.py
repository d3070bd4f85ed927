"""`python -m tests.chaos`: a chaos run that prints its figures."""

from tests.chaos.chaos import main

main()
