"""DELIFT Studio: the entry point (`streamlit run app.py`). It only names the pages."""

from __future__ import annotations

import streamlit as st

# No page icons: a page's icon becomes the browser tab's icon, and Material icons are fetched
# from an outside host there (the app makes no outside requests; ui/layout.py sets a bundled
# one).
PAGES = [
    st.Page("pages/0_Home.py", title="Home", default=True),
    st.Page("pages/1_Data.py", title="Data"),
    st.Page("pages/2_Score.py", title="Score"),
    st.Page("pages/3_Select.py", title="Select"),
    st.Page("pages/4_Compare.py", title="Compare"),
    st.Page("pages/5_Export.py", title="Export"),
]

st.navigation(PAGES).run()
