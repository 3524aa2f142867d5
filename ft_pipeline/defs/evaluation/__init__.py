"""evaluation_report and the promotion gate."""
