#!/usr/bin/env python3
"""Read lambdarec's Iceberg tables with PyIceberg and print what it sees.

Usage: pyiceberg_check.py CATALOG_DB WAREHOUSE NAMESPACE TABLE...

Opens lambdarec's SQL catalog (SQLite file CATALOG_DB, catalog name
"lambdarec", warehouse file:// URL WAREHOUSE), loads each TABLE of NAMESPACE,
reads its current snapshot in full with PyArrow, and prints one JSON object
on stdout: {"pyiceberg": version, "tables": {name: {"rows", "snapshot_id",
"schema", "distinct": {"event_id" or "batch_id": distinct values}}}}. The Go
test (interop_test.go) compares it with what iceberg-go wrote.
"""
import json
import sys

import pyiceberg
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.types import ListType, MapType, NestedField, StructType


def type_json(t):
    """An Iceberg type as JSON: a primitive's name, or a nested structure."""
    if isinstance(t, StructType):
        return {"struct": [field_json(f) for f in t.fields]}
    if isinstance(t, ListType):
        return {"list": {"id": t.element_id, "required": t.element_required,
                         "type": type_json(t.element_type)}}
    if isinstance(t, MapType):
        return {"map": {"key_id": t.key_id, "key": type_json(t.key_type),
                        "value_id": t.value_id, "value_required": t.value_required,
                        "value": type_json(t.value_type)}}
    return str(t)


def field_json(f: NestedField):
    return {"id": f.field_id, "name": f.name, "required": f.required, "type": type_json(f.field_type)}


def main(argv):
    if len(argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    db, warehouse, namespace, tables = argv[1], argv[2], argv[3], argv[4:]
    cat = SqlCatalog("lambdarec", uri="sqlite:///" + db, warehouse=warehouse)
    out = {"pyiceberg": pyiceberg.__version__, "tables": {}}
    for name in tables:
        tbl = cat.load_table((namespace, name))
        snap = tbl.current_snapshot()
        data = tbl.scan().to_arrow()
        info = {
            "rows": data.num_rows,
            "snapshot_id": snap.snapshot_id if snap else None,
            "schema": [field_json(f) for f in tbl.schema().fields],
            "distinct": {},
        }
        # Distinct values of the string columns that identify rows.
        for col in ("event_id", "batch_id"):
            if col in data.column_names:
                info["distinct"][col] = len(set(data.column(col).to_pylist()))
        out["tables"][name] = info
    json.dump(out, sys.stdout, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
