"""Built-in datasets: every module here registers its entries on import."""
