"""A study's tables and what is shown of them: load_study, summaries, findings, the HTML report."""
