"""``gridscope catalog list``: print the datasets of a catalog."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("catalog", help="list the datasets of the catalog")
    actions = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))
    listing = actions.add_parser("list", help="one line per dataset: id, format, title, location")
    listing.add_argument("--catalog", help="catalog YAML (default: bundled, or $GRIDSCOPE_CATALOG)")
    listing.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from data_catalog import load_catalog

    catalog = load_catalog(args.catalog)
    rows = [(e.id, e.format, e.title, str(e.urlpath)) for e in catalog.entries]
    widths = [max(len(r[i]) for r in rows + [("id", "format", "title", "")]) for i in range(3)]
    print(f"{'id':<{widths[0]}}  {'format':<{widths[1]}}  {'title':<{widths[2]}}  location")
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")
    return 0
