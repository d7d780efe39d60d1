"""Files shipped inside the wheel as ``botrix_toolkit.data``: scenarios, alert rules, a sample history.

Read them with ``botrix_toolkit.core.settings.bundled_data_dir()``; nothing is
ever written here (runs go under ``$BOTRIX_HOME``).
"""
