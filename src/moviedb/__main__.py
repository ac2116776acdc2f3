"""`python -m moviedb` is the `moviedb` command."""

from moviedb.cli import main

main()
