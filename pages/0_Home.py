"""Home: what the app does and where to start. No logic lives here."""

from __future__ import annotations

import streamlit as st

from ui import layout

layout.setup_page("Home")

st.title("DELIFT Studio")
st.markdown(
    "DELIFT Studio picks a small, informative subset of instruction-tuning data. For every pair "
    "of samples it measures how much one sample, shown to a language model as an in-context "
    "example, helps the model produce the other's answer. Submodular optimisation over that "
    "utility matrix then chooses samples that together cover the data."
)
st.markdown(
    "It serves three stages of fine-tuning: **instruction tuning** (which part of this pool is "
    "enough?), **task-specific tuning** (which samples serve a target task?) and **continual "
    "tuning** (which new samples add what existing data lacks?). Scoring runs in the background "
    "and is cached, so selections, comparisons and exports are instant and reproducible."
)
st.markdown(
    f"A {layout.DEMO_START_ROWS}-row slice of the demo set is loaded as the pool when the app "
    "starts, so you can go straight to scoring."
)

st.subheader("Quick start")
st.page_link(
    "pages/1_Data.py",
    label="1. Data: load a pool, and a target or existing set",
    icon=":material/database:",
)
st.page_link(
    "pages/2_Score.py",
    label="2. Score: compute the utility matrix in the background",
    icon=":material/speed:",
)
st.page_link(
    "pages/3_Select.py",
    label="3. Select: choose stage, method and budget; explore the map",
    icon=":material/filter_alt:",
)
st.page_link(
    "pages/4_Compare.py",
    label="4. Compare: put saved selections side by side",
    icon=":material/compare:",
)
st.page_link(
    "pages/5_Export.py",
    label="5. Export: download JSONL and a manifest for your trainer",
    icon=":material/download:",
)
