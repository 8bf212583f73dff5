"""The one exception type bad input raises: the CLI prints its message on one line and exits non-zero.
And the command lines' parser, whose errors are one line too."""
import argparse
import sys



class InputError(ValueError):
    """An input (file, array, option) that the runtime cannot process. The message names the problem
    and the expected form."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with one-line errors (argparse prints the whole usage first)."""

    def error(self, message: str):
        print(f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)
