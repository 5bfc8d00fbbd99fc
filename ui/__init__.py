"""Streamlit-side helpers of DELIFT Studio: services, session state, plots, background tasks."""
