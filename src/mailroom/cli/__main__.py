"""``python -m mailroom.cli``."""

from mailroom.cli import main

main()
