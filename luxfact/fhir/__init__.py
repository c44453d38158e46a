"""FHIR R4 reads: Patient, Encounter, Claim, ClaimResponse and Invoice, one by one."""
