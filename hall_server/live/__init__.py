"""The live hall: what the invigilator watches while the exam runs.

``bus`` coalesces changes into small Socket.IO events (in-process, or through Redis when ingest runs in its
own processes), ``hallview`` reads seats, observations and seat details from the store, ``seatstate`` is
the pure merge of roster, enrolment and mDNS discovery into seat states, ``invigilation`` carries out the
invigilator's actions (acknowledge, ID check, capture now, start and end), and ``discovery`` with
``announce`` advertise the hall and browse the agents over mDNS.
"""
