"""People who use Vigil, their roles, and the customer sites a customer's users may see."""
