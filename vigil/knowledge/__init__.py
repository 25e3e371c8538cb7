"""The knowledge base: known faults and their fixes, suggested for tickets."""
