"""Services: the seed's classes and what they need, above the stores."""
