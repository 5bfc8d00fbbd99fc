"""Export: a saved selection as JSONL (original, alpaca or messages format) with a manifest,
as downloads or written into a folder."""

from __future__ import annotations

import streamlit as st

from delift_core.errors import DeliftError
from delift_core.export import FORMATS, export_subset, jsonl_bytes, subset_rows
from delift_core.paths import export_root, export_target
from delift_core.selection_store import (
    SavedSelection,
    check_pool,
    export_annotations,
    export_manifest,
    file_stem,
    manifest_bytes,
)
from ui import layout, registry, state

svc = layout.setup_page("Export")
cache = svc.cache

st.title("Export")
saved = registry.list_selections(cache, svc.workspace)
if not saved:
    st.info(f"No saved selections in workspace {svc.workspace} yet: save one on the Select page.")
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
    indices, record = registry.load_selection(cache, name, svc.workspace)
    selection = SavedSelection.from_dict(record, indices, name=name)
    pool = registry.load_source(selection.pool["spec"], cache)
    check_pool(selection, pool.hash)
    annotations = export_annotations(selection) if annotate else None
    rows = subset_rows(pool.records, selection.indices, fmt, annotations)
except DeliftError as exc:
    st.error(layout.escape_md(exc))
    st.stop()

manifest = export_manifest(selection, pool_size=len(pool), fmt=fmt, annotate=annotate)
data = jsonl_bytes(rows)
file_name = f"{file_stem(name)}.jsonl"

st.text(
    f"{len(rows):,} rows · {layout.fmt_bytes(len(data))} · {selection.method} · "
    f"{selection.stage} stage · from {selection.pool['label']}"
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
    manifest_bytes(manifest, file_name, len(rows)),
    file_name=f"{file_stem(name)}.manifest.json",
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
