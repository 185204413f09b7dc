"""Cost: measured runs on the device at hand, and calibration of the analytical hardware model (hwmodels/) against them."""
