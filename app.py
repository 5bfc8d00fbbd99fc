"""DELIFT Studio: the entry point (`streamlit run app.py`). It only names the pages."""

from __future__ import annotations

import streamlit as st

PAGES = [
    st.Page("pages/0_Home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/1_Data.py", title="Data", icon=":material/database:"),
    st.Page("pages/2_Score.py", title="Score", icon=":material/speed:"),
    st.Page("pages/3_Select.py", title="Select", icon=":material/filter_alt:"),
    st.Page("pages/4_Compare.py", title="Compare", icon=":material/compare:"),
    st.Page("pages/5_Export.py", title="Export", icon=":material/download:"),
]

st.navigation(PAGES).run()
