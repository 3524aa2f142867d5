"""raw_data and cleaned_data (with its quarantine), and their checks."""
