"""Data: load the pool, and optionally a target set (task stage) or an existing set (continual
stage), from the demo set, an upload or a local path; preview and describe them."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from delift_core import paths
from delift_core.data.dataset import SUPPORTED_FORMATS, Dataset, dataset_stats
from delift_core.errors import ConfigError, DataError, FieldMapNeeded
from ui import layout, registry, services, state, workspaces

svc = layout.setup_page("Data")

st.title("Data")
st.caption(
    "Load the pool to select from. For the task-specific stage add a target set; for the "
    "continual stage, an existing set. Text is shown as plain text, never rendered."
)

SOURCES = {"demo": "Demo set", "upload": "Upload a file", "path": "Local path"}
try:
    LOCAL_PATHS = paths.local_paths_enabled()
except ConfigError as exc:  # a mistyped setting turns local paths off rather than on
    st.warning(layout.escape_md(exc))
    LOCAL_PATHS = False
if not LOCAL_PATHS:  # a shared deployment: uploads only ($DELIFT_LOCAL_PATHS=off)
    del SOURCES["path"]
PREVIEW_ROWS = 100
LOADED_MESSAGE = "data_loaded_message"  # shown once, after the rerun that follows a load

role = st.radio(
    "Load as", state.ROLES, format_func=state.ROLE_LABELS.get, horizontal=True, key="data_role"
)
source = st.radio(
    "Source", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="data_source"
)

spec: dict[str, Any] | None = None
upload = earlier = None
if source == "demo":
    st.caption(
        "assets/demo.jsonl: 300 short instruction records in six task families (grammar, "
        "arithmetic, summaries, ...), some deliberately poor, some near-duplicates. A small "
        f"slice scores quickly on a CPU: {layout.DEMO_START_ROWS} rows in sparse mode (k = 8) "
        "take about a minute."
    )
    c1, c2 = st.columns(2)
    offset = c1.number_input("Skip the first rows", 0, 299, 0, key="data_demo_offset")
    limit = c2.number_input(
        "Rows to load (0 = all)", 0, 300, layout.DEMO_START_ROWS, key="data_demo_limit"
    )
    spec = {"kind": "demo", "offset": int(offset), "limit": int(limit) or None}
else:
    if source == "upload":
        upload = st.file_uploader(
            f"Dataset file (up to {services.max_upload_mb()} MB)",
            type=["jsonl", "ndjson", "json", "csv", "parquet"],
            key="data_upload",
        )
        st.caption(f"Formats: {SUPPORTED_FORMATS} (folders only via a local path).")
        # Earlier uploads of this workspace only: other sessions' files are never listed.
        uploads = dict(workspaces.list_uploads(svc.cache, svc.workspace))
        if uploads:
            earlier = st.selectbox(
                "Or load a file uploaded earlier in this workspace",
                [None, *uploads],
                format_func=lambda d: "(none)" if d is None else uploads[d]["name"],
                key="data_earlier_upload",
            )
    else:
        roots = layout.escape_md(", ".join(map(str, paths.data_roots())))
        path = st.text_input(
            "File or folder path",
            key="data_path",
            placeholder="/data/train.jsonl",
            help=f"Formats: {SUPPORTED_FORMATS}. Paths must lie under: {roots}",
        )
    c1, c2 = st.columns(2)
    offset = c1.number_input("Skip the first rows", 0, None, 0, key="data_offset")
    limit = c2.number_input("Rows to load (0 = all)", 0, None, 0, key="data_limit")
    skip_invalid = st.checkbox(
        "Skip invalid records",
        key="data_skip_invalid",
        help="Leave out records that fail validation (e.g. an empty answer) and list them as"
        " warnings, instead of refusing the whole file. Rows to skip and to load then count"
        " valid records.",
    )
    spec = {"kind": source, "offset": int(offset), "limit": int(limit) or None}
    if skip_invalid:
        spec["skip_invalid"] = True
    if source == "path":
        spec["path"] = path.strip()

FIELD_KEYS = {c: f"data_field_{c}" for c in ("instruction", "input", "output")}
NEEDS_FIELDS = "data_needs_field_map"  # the error of a load that lacked field names, if any
field_map = {
    c: str(st.session_state.get(k) or "").strip()
    for c, k in FIELD_KEYS.items()
    if str(st.session_state.get(k) or "").strip()
}
if source != "demo":  # the demo set has its own field names: a map set for a file never applies
    label = "Field names (optional: for files with other column names)"
    if field_map:
        label = f"Field names ({len(field_map)} set: {', '.join(field_map)})"
    with st.expander(label, expanded=bool(field_map) or bool(st.session_state.get(NEEDS_FIELDS))):
        st.caption(
            "Leave empty to detect alpaca, prompt/completion, ShareGPT or messages schemas. "
            "Names set here apply to files and uploads, never to the demo set."
        )
        f1, f2, f3 = st.columns(3)
        for column, (canonical, key) in zip((f1, f2, f3), FIELD_KEYS.items(), strict=True):
            column.text_input(f"{canonical.capitalize()} field", key=key)
    spec["field_map"] = field_map or None
else:
    spec["field_map"] = None

current = state.get_handle(role)
replacing = current is not None
if replacing:
    confirm_replace = st.checkbox(
        f"Replace the loaded {role} ({current['label']}, {current['rows']:,} rows)",
        key="data_confirm_replace",
    )

if st.button("Load data", type="primary", key="data_load"):
    try:
        if replacing and not confirm_replace:
            raise ConfigError(
                f"a {role} is already loaded: tick 'Replace the loaded {role}' to replace it"
            )
        if source == "upload":
            if upload is None and earlier is None:
                raise DataError("choose a file to upload first")
            # The spec names its workspace: the pages of others do not offer its data.
            spec["workspace"] = svc.workspace
            if upload is not None:
                data = upload.getvalue()
                spec["name"] = upload.name
                spec["digest"] = workspaces.store_upload(
                    svc.cache, svc.workspace, upload.name, data
                )
            else:
                spec["name"], spec["digest"] = uploads[earlier]["name"], earlier
        if source == "path":
            # Confined to the data roots; the resolved path is kept, so that a link changed
            # later cannot lead the stored source elsewhere.
            spec["path"] = str(paths.check_data_path(spec["path"]))
        with st.spinner("Loading and validating..."):
            ds = registry.load_source(spec, svc.cache)
    except FieldMapNeeded as exc:
        # Shown after a rerun, so that the Field names form above is drawn open.
        st.session_state[NEEDS_FIELDS] = (
            f"Could not load the data: {layout.escape_md(exc)}. Set the names under "
            "'Field names' above, then load again."
        )
        st.rerun()
    except (DataError, ConfigError) as exc:
        st.error(f"Could not load the data: {layout.escape_md(exc)}")
    else:
        st.session_state[NEEDS_FIELDS] = None
        st.session_state.pop("data_confirm_replace", None)
        state.set_handle(role, registry.make_handle(spec, ds))
        st.session_state[LOADED_MESSAGE] = f"Loaded {len(ds):,} rows as the {role}."
        st.rerun()  # the sidebar, drawn before the button, must show the new data
if st.session_state.get(NEEDS_FIELDS):
    st.error(st.session_state[NEEDS_FIELDS])
if LOADED_MESSAGE in st.session_state:
    st.success(st.session_state.pop(LOADED_MESSAGE))


def _preview(ds: Dataset) -> pd.DataFrame:
    rows = []
    for record in ds.records[:PREVIEW_ROWS]:
        extra = {
            k: v if isinstance(v, (str, int, float, bool)) or v is None else str(v)
            for k, v in record.fields.items()
            if k not in ("id", "instruction", "input", "output")
        }
        rows.append(
            {
                "id": record.id,
                "instruction": record.instruction,
                "input": record.input,
                "output": record.output,
                **extra,
            }
        )
    return pd.DataFrame(rows)


def _show_dataset(role: str, handle: dict[str, Any]) -> Dataset | None:
    try:
        ds = registry.dataset_for(handle, svc.cache)
    except (DataError, ConfigError) as exc:
        st.error(f"{role}: {layout.escape_md(exc)}")
        return None
    stats = dataset_stats(ds)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Rows", f"{stats['rows']:,}")
    m2.metric(
        "Exact duplicates",
        f"{stats['duplicates']:,}",
        help="Records whose instruction, input and output are all identical. Near-duplicates "
        "are not counted here: Select's quality table shows each sample's closest neighbour "
        "(max_similarity), and DELIFT's coverage avoids picking both.",
    )
    m3.metric("Empty input", f"{stats['empty_input']:,}")
    m4.metric("Schema", ds.schema)
    st.text(f"Source: {ds.path}")
    lengths = pd.DataFrame(stats["chars"]).T.rename_axis("field")
    c1, c2 = st.columns([3, 2])
    c1.caption("Length in characters")
    c1.dataframe(lengths.round(1), key=f"data_lengths_{role}")
    c2.caption("Fields (records having each)")
    c2.dataframe(
        pd.DataFrame({"field": list(stats["fields"]), "records": list(stats["fields"].values())}),
        hide_index=True,
        key=f"data_fields_{role}",
    )
    if ds.warnings:
        st.warning(f"{len(ds.warnings)} warning(s) while reading:")
        st.code("\n".join(ds.warnings), language=None)
    st.caption(f"Preview (first {min(PREVIEW_ROWS, len(ds))} rows)")
    st.dataframe(_preview(ds), hide_index=True, key=f"data_preview_{role}")
    return ds


st.divider()
st.subheader("Loaded data")
loaded = {r: h for r, h in state.handles().items() if h is not None}
if not loaded:
    st.info("No data loaded yet: choose a source above and press Load data.")
datasets: dict[str, Dataset] = {}
for role_name, handle in loaded.items():
    st.markdown(f"#### {state.ROLE_LABELS[role_name]}")
    st.text(f"{handle['label']} · {handle['rows']:,} rows")
    ds = _show_dataset(role_name, handle)
    if ds is not None:
        datasets[role_name] = ds
    if st.button("Remove", key=f"data_remove_{role_name}"):
        state.clear_handle(role_name)
        st.rerun()

if "pool" in datasets:
    pool_hashes = {r.hash for r in datasets["pool"].records}
    for other in ("targets", "existing"):
        if other in datasets:
            shared = sum(1 for r in datasets[other].records if r.hash in pool_hashes)
            if shared:
                st.warning(
                    f"{shared:,} record(s) of the {other} also appear in the pool. Keep them "
                    "disjoint: overlapping data makes selection and evaluation look better "
                    "than they are."
                )
