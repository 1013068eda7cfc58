"""The frameworks a compliance report speaks to, and which of their controls each section
gives evidence for (pure data)."""

from __future__ import annotations

import enum

__all__ = ["CONTROLS", "TITLES", "Framework"]


class Framework(enum.StrEnum):
    SOC2 = "soc2"
    PCI_DSS = "pci-dss"
    HIPAA = "hipaa"


TITLES = {
    Framework.SOC2: "SOC 2 (Trust Services Criteria)",
    Framework.PCI_DSS: "PCI DSS v4.0",
    Framework.HIPAA: "HIPAA Security Rule",
}

#: Section -> the controls it is evidence for, per framework.
CONTROLS: dict[Framework, dict[str, str]] = {
    Framework.SOC2: {
        "rotation": "CC6.1 (logical access security), CC6.7 (protection of credentials)",
        "access": "CC6.2, CC6.3 (access provisioning, review and removal)",
        "revocations": "CC6.3 (removal of access), CC7.4 (incident response)",
        "unauthorized": "CC7.2 (monitoring for anomalies), CC7.3 (evaluation of events)",
        "integrity": "CC7.2 (audit logging), CC4.1 (monitoring activities)",
    },
    Framework.PCI_DSS: {
        "rotation": "3.6.1, 3.7.4 (cryptoperiods and key changes), 8.3.9, 8.6.3 (passwords)",
        "access": "7.2.1-7.2.5 (least privilege, access review), 8.2.6 (inactive accounts)",
        "revocations": "3.7.5 (retirement of compromised keys), 12.10 (incident response)",
        "unauthorized": "10.2.1.4 (invalid access attempts), 10.4.1 (log review)",
        "integrity": "10.3.2, 10.3.4 (audit logs protected from modification)",
    },
    Framework.HIPAA: {
        "rotation": "164.308(a)(5)(ii)(D) (password management)",
        "access": "164.308(a)(4) (access authorization), 164.312(a)(1) (access control)",
        "revocations": "164.308(a)(3)(ii)(C) (termination), 164.308(a)(6) (incidents)",
        "unauthorized": "164.308(a)(1)(ii)(D) (information system activity review)",
        "integrity": "164.312(b) (audit controls), 164.312(c)(1) (integrity)",
    },
}
