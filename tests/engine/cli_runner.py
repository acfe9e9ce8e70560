"""Run ``ccnet.cli.main`` in a subprocess with the engine commands registered (as ``python -m ccnet`` will
once the dispatcher lists them): ``python tests/engine/cli_runner.py train ...``."""

import sys

from ccnet.cli import COMMANDS, main

COMMANDS.setdefault("train", ("ccnet.cli.train", "train a model"))
COMMANDS.setdefault("eval", ("ccnet.cli.eval", "evaluate a model"))
COMMANDS.setdefault("predict", ("ccnet.cli.predict", "segment images"))

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
