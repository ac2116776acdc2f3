"""`python -m moviedb` is the `moviedb` command."""

from moviedb.launcher import main

main()
