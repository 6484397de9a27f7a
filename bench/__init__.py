"""The export benchmark (`make bench`): the product's export pass against the floor, on Azurite."""
