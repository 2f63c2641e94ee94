"""The data at another pixel size: rescaling, edge/inner labels, the dataset over a ladder of factors."""
