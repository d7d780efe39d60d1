"""pandas frames of jobs, stats and recorded events; their analysis and plotly figures.

Data flows one way: Redis -> frames -> analysis -> plots -> a notebook or the dashboard.
"""
