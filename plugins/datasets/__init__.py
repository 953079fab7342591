"""Built-in datasets plugins, one file each."""
