"""``pendra pull``, ``pendra list``/``ls``, ``pendra rm``: the names Ollama users type.

Each is the same command as its ``pendra models`` spelling — the same handler, the same options,
the same output and exit codes: ``pull REF`` = ``models install REF``, ``list`` = ``models``,
``rm REF`` = ``models rm REF``.
"""

from __future__ import annotations

import argparse

from worker.cli import models

ORDER = 31


def register(subparsers: argparse._SubParsersAction) -> None:
    pull = subparsers.add_parser(
        "pull",
        help="install a model (= models install): a catalogue ref or hf.co/OWNER/REPO[:QUANT]",
        description=models.INSTALL_DESCRIPTION,
    )
    pull.add_argument("ref", metavar="REF", help=models.REF_HELP)
    pull.add_argument("--backend", metavar="B", help="pendra, ollama, lmstudio or speaches")
    pull.add_argument("--json", action="store_true", help="print the finished job as JSON")
    pull.set_defaults(handler=models.run_install)

    listing = subparsers.add_parser(
        "list",
        aliases=["ls"],
        help="models on every backend (= models)",
        description="List the models on every backend (the same as `pendra models`).",
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=models.run_list)

    remove = subparsers.add_parser(
        "rm",
        help="remove an installed model (= models rm)",
        description="Remove REF from the backend it is installed in (or from --backend B).",
    )
    remove.add_argument("ref", metavar="REF")
    remove.add_argument("--backend", metavar="B")
    remove.add_argument("--json", action="store_true", help="machine-readable output")
    remove.set_defaults(handler=models.run_rm)
