// The EICAR test string anywhere in a file: the hash signatures need the exact
// 68- or 69-byte file, this rule finds it embedded (in a script, a document, …).
rule Virus_Test_EICAR_Embedded
{
    meta:
        description = "EICAR anti-malware test string"
        threat_type = "virus"
    strings:
        $eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    condition:
        $eicar
}
