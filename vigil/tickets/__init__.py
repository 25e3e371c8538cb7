"""The service desk's tickets: their life, their service levels and who is told when.

Read this package first. ``transitions`` (who may move a ticket where),
``sla`` (deadlines on a service calendar) and ``priority`` (priority and
category from the source and the device) are pure rules; ``service`` applies
them to the database inside the caller's transaction; ``watchdog`` is the
scheduled job that marks tickets at risk or breached and escalates them;
``notifiers`` deliver what the watchdog decides to send. After a ticket:
``survey`` (the customer's single-use satisfaction link), ``voucher`` (the
service report kept with the ticket) and ``retention`` (records kept at least
three years, then removed).
"""
