"""`python -m toolrec` = the `toolrec` CLI."""

from toolrec.cli import main

main()
