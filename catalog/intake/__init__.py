"""Policy intake: turn a policy document (PDF, DOCX, HTML, text) into a draft policy with proposals.

extract.py reads the file into structured text; fields.py finds the policy's fields and conditions.py
proposes eligibility rules, each with the sentence it came from; service.py stores the draft.
"""
