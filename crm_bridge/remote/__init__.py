"""Remote CRMs (HubSpot, Salesforce) that receive the CRM's writes through the outbox."""
