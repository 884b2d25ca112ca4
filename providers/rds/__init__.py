"""AWS RDS and Aurora (point-in-time restore through the RDS API)."""
