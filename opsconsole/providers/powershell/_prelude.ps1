# Shared by every script (prepended after the injected parameters).
# Stop on the first error and answer it as JSON, so the console never has to
# scrape PowerShell's error text for a failure it caused itself.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

# WinRM carries stdout through the OEM code page: escape everything outside
# ASCII so VM names with typographic quotes come back intact.
function Out-Json($o) {
    $j = ConvertTo-Json -InputObject $o -Compress -Depth 5
    [Console]::Out.WriteLine([regex]::Replace($j, '[^\x20-\x7e]', { param($m) '\u{0:x4}' -f [int][char]$m.Value }))
}

function Fail([string]$m) {
    Out-Json @{ error = $m }
    exit 1
}

trap { Fail "$_" }
