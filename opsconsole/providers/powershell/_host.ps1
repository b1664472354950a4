# When the host last booted, as Unix seconds: a restart changes it.
function Boot-Epoch {
    [int64]([DateTimeOffset](Get-CimInstance Win32_OperatingSystem).LastBootUpTime).ToUnixTimeSeconds()
}
