"""The knowledge base: known faults and their fixes, versioned, suggested for tickets.

``ranking`` (model, fault code, category, TF-IDF text similarity, feedback) is
pure; ``service`` keeps versions, suggestions' verdicts and drafts from tickets.
"""
