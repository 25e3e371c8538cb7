"""Service engineers: what they are qualified for, where and when they work, and who gets a ticket."""
