"""Enterprise enquiries (诉求): intake, instant answers, routing, SLA clock, escalation, ratings."""
