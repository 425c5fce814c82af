"""`python -m toolrec` = the `toolrec` CLI."""

from toolrec.cli import main

if __name__ == "__main__":  # not again in a multiprocessing child
    main()
