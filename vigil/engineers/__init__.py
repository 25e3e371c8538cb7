"""Service engineers: what they are qualified for, when and where they work, who takes a ticket."""
