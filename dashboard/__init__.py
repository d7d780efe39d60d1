"""The botrix live dashboard (Streamlit): run it with ``botrix dashboard``."""
