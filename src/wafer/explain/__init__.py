"""Grad-CAM / Grad-CAM++ and the report of how well they localise the defect."""
