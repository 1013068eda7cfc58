"""``python -m strongroom.cli``: the same command as the installed ``strongroom`` script."""

from strongroom.cli import main

main()
