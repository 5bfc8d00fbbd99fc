"""Export: a saved selection as JSONL (original, alpaca or messages format) with a manifest,
as downloads or written into a folder."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import streamlit as st

from delift_core.errors import DataError, DeliftError
from delift_core.export import FORMATS, build_manifest, export_subset, jsonl_bytes, subset_rows
from delift_core.paths import export_root, export_target
from ui import layout, registry, state

svc = layout.setup_page("Export")
cache = svc.cache

st.title("Export")
saved = registry.list_selections(cache)
if not saved:
    st.info("No saved selections yet: save one on the Select page.")
    st.page_link("pages/3_Select.py", label="Go to Select", icon=":material/filter_alt:")
    st.stop()

FORMAT_HELP = {
    "original": "every field of the source records, unchanged",
    "alpaca": "instruction / input / output",
    "messages": "OpenAI-style chat messages (user, assistant)",
}
names = [name for name, _ in saved]
last = st.session_state.get(state.LAST_SELECTION)
name = st.selectbox(
    "Selection", names, index=names.index(last) if last in names else 0, key="export_name"
)
if name == last:
    st.caption(f"'{layout.escape_md(name)}' is the selection you saved last in this session.")
elif name == names[0] and last not in names:
    st.caption(f"'{layout.escape_md(name)}' is the most recently saved selection.")
c1, c2 = st.columns([2, 3])
fmt = c1.radio(
    "Format",
    list(FORMATS),
    format_func=lambda f: f"{f}: {FORMAT_HELP.get(f, '')}",
    key="export_format",
)
annotate = c2.checkbox(
    "Add _delift annotations (rank, gain, method, stage) to each row",
    value=False,
    key="export_annotate",
)

try:
    indices, meta = registry.load_selection(cache, name)
    pool = registry.load_source(meta["pool"]["spec"], cache)
    recorded = (meta.get("pool") or {}).get("hash")
    if recorded and pool.hash != recorded:
        raise DataError(
            f"the pool of '{name}' has changed since it was selected: its content hash is now "
            f"{pool.hash}, the selection recorded {recorded}. Exporting would write other rows; "
            "load the data again, score and select anew"
        )
    annotations = None
    if annotate:
        gains = meta.get("gains") or [None] * len(indices)
        annotations = [
            {"rank": r + 1, "gain": gains[r], "method": meta["method"], "stage": meta["stage"]}
            for r in range(len(indices))
        ]
    rows = subset_rows(pool.records, indices, fmt, annotations)
except DeliftError as exc:
    st.error(layout.escape_md(exc))
    st.stop()


def _describe(role: str) -> dict[str, Any] | None:
    info = meta.get(role)
    if not info:
        return None
    return {k: info.get(k) for k in ("label", "path", "hash", "rows", "schema", "spec")}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "selection"


manifest = build_manifest(
    selection=name,
    method=meta["method"],
    stage=meta["stage"],
    kernel=meta.get("kernel"),
    metric=meta.get("metric"),
    seed=meta.get("seed"),
    budget={"fraction": meta.get("fraction"), "count": len(indices), "pool_size": len(pool)},
    objective=meta.get("objective"),
    inputs={role: _describe(role) for role in ("pool", "targets", "existing")},
    model=meta.get("model"),
    scoring=meta.get("scoring"),
    stage_key=meta.get("stage_key"),
    export={"format": fmt, "annotations": annotate, "order": "selection order, first pick first"},
    indices=np.asarray(indices).tolist(),
    # The curator's choices, as `delift select --pin/--exclude` records them (none for
    # selections saved before pinning existed).
    pinned_ids=list(meta.get("pinned_ids") or []),
    excluded_ids=list(meta.get("excluded_ids") or []),
)
data = jsonl_bytes(rows)
file_name = f"{_slug(name)}.jsonl"
download_manifest = manifest | {"output": {"file": file_name, "rows": len(rows)}}
manifest_bytes = (json.dumps(download_manifest, indent=2, ensure_ascii=False) + "\n").encode()

st.text(
    f"{len(rows):,} rows · {layout.fmt_bytes(len(data))} · {meta['method']} · {meta['stage']} "
    f"stage · from {meta['pool']['label']}"
)
st.caption("First rows")
st.code(b"".join(data.splitlines(keepends=True)[:3]).decode("utf-8"), language="json")

d1, d2, _ = st.columns([1, 1, 2])
d1.download_button(
    "Download JSONL",
    data,
    file_name=file_name,
    mime="application/jsonl",
    key="export_download_jsonl",
    on_click="ignore",
    type="primary",
)
d2.download_button(
    "Download manifest",
    manifest_bytes,
    file_name=f"{_slug(name)}.manifest.json",
    mime="application/json",
    key="export_download_manifest",
    on_click="ignore",
)

st.subheader("Write to a folder")
root = export_root()
st.caption(
    f"Files are written only inside {layout.escape_md(root)} (the export folder, set by"
    " DELIFT\\_EXPORT\\_ROOT)."
)
w1, w2 = st.columns(2)
folder = w1.text_input("Folder", value=str(root), key="export_folder")
target_name = w2.text_input("File name", value=file_name, key="export_filename")
overwrite = st.checkbox(
    "Overwrite if it exists",
    value=False,
    key="export_overwrite",
    help="Replace an existing file of this name and its manifest. Off: an existing file is"
    " left as it is and nothing is written.",
)
if st.button("Write files", key="export_write"):
    try:
        target = export_target(folder, target_name.strip())
        paths = export_subset(target, rows, manifest, overwrite=overwrite)
    except (DeliftError, OSError) as exc:
        st.error(f"Nothing was written: {layout.escape_md(exc)}")
    else:
        st.success("Written:")
        st.text(
            f"{paths.jsonl} ({layout.fmt_bytes(paths.jsonl.stat().st_size)})\n"
            f"{paths.manifest} ({layout.fmt_bytes(paths.manifest.stat().st_size)})"
        )
