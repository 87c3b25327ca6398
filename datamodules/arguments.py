"""Command-line parsing for the commands that take no config (`make corpus`, `make data`, `make generate`)."""

import argparse


class OneSentenceParser(argparse.ArgumentParser):
    """Answers a bad argument with one sentence and exit status 2, without the usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {message}.\n")
