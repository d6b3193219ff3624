// Compiled by MSBuild's RoslynCodeTaskFactory (see NativeRuntime.targets). Kept dependency-free on purpose.
using System;
using System.IO;
using System.Linq;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public class FedLlmPatchGlibcxxRequirement : Task
{
    const string LibraryName = "libLibTorchSharp.so";
    const string WantedVersion = "GLIBCXX_3.4.32";
    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlagWeak = 0x2;

    [Required] public string Directory { get; set; } = "";

    public override bool Execute()
    {
        if (!System.IO.Directory.Exists(Directory)) return true;
        var libraries = System.IO.Directory.GetFiles(Directory, LibraryName, SearchOption.AllDirectories);
        if (libraries.Length == 0) return true;
        if (SystemLibstdcxxHas(WantedVersion))
        {
            Log.LogMessage(MessageImportance.Low, "System libstdc++ provides " + WantedVersion + "; no patch needed.");
            return true;
        }
        foreach (var path in libraries)
        {
            try
            {
                var outcome = MarkVersionWeak(path, WantedVersion);
                Log.LogMessage(MessageImportance.Normal, "FedLlm native runtime: " + path + ": " + outcome);
            }
            catch (Exception e)
            {
                Log.LogError("FedLlm native runtime: cannot patch " + path + ": " + e.Message);
                return false;
            }
        }
        return true;
    }

    static bool SystemLibstdcxxHas(string version)
    {
        string[] candidates =
        {
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/usr/lib/aarch64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6", "/lib64/libstdc++.so.6",
            "/usr/lib/libstdc++.so.6",
        };
        var found = candidates.Where(File.Exists).ToList();
        // No libstdc++ where we look: leave the library alone rather than guess.
        if (found.Count == 0) return true;
        var needle = Encoding.ASCII.GetBytes(version + "\0");
        return found.Any(p => IndexOf(File.ReadAllBytes(p), needle) >= 0);
    }

    static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i <= haystack.Length - needle.Length; i++)
        {
            int j = 0;
            while (j < needle.Length && haystack[i + j] == needle[j]) j++;
            if (j == needle.Length) return i;
        }
        return -1;
    }

    /// <summary>Sets VER_FLG_WEAK on the Vernaux entry named <paramref name="version"/> of an ELF64 little-endian file.</summary>
    static string MarkVersionWeak(string path, string version)
    {
        var elf = File.ReadAllBytes(path);
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (elf[4] != 2 || elf[5] != 1) throw new InvalidDataException("not a 64-bit little-endian ELF file");
        ulong shoff = BitConverter.ToUInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A);
        int shnum = BitConverter.ToUInt16(elf, 0x3C);
        for (int s = 0; s < shnum; s++)
        {
            long sh = (long)shoff + (long)s * shentsize;
            if (BitConverter.ToUInt32(elf, (int)sh + 4) != ShtGnuVerneed) continue;
            long offset = (long)BitConverter.ToUInt64(elf, (int)sh + 0x18);
            int link = (int)BitConverter.ToUInt32(elf, (int)sh + 0x28);
            long strtab = (long)BitConverter.ToUInt64(elf, (int)((long)shoff + (long)link * shentsize) + 0x18);
            long verneed = offset;
            while (true)
            {
                int count = BitConverter.ToUInt16(elf, (int)verneed + 2);
                long aux = verneed + BitConverter.ToUInt32(elf, (int)verneed + 8);
                for (int a = 0; a < count; a++)
                {
                    long nameOffset = strtab + BitConverter.ToUInt32(elf, (int)aux + 8);
                    if (ReadCString(elf, nameOffset) == version)
                    {
                        ushort flags = BitConverter.ToUInt16(elf, (int)aux + 4);
                        if ((flags & VerFlagWeak) != 0) return version + " already weak";
                        flags |= VerFlagWeak;
                        BitConverter.GetBytes(flags).CopyTo(elf, (int)aux + 4);
                        // A new file, renamed over the old one: the output may be a hard link into the NuGet package
                        // cache (CreateHardLinksForCopyLocalIfPossible), which must stay as the package shipped it.
                        var patched = path + ".patched";
                        File.WriteAllBytes(patched, elf);
                        File.Delete(path);
                        File.Move(patched, path);
                        return version + " marked weak";
                    }
                    uint nextAux = BitConverter.ToUInt32(elf, (int)aux + 12);
                    if (nextAux == 0) break;
                    aux += nextAux;
                }
                uint next = BitConverter.ToUInt32(elf, (int)verneed + 12);
                if (next == 0) break;
                verneed += next;
            }
        }
        return version + " not required";
    }

    static string ReadCString(byte[] data, long offset)
    {
        long end = offset;
        while (end < data.Length && data[end] != 0) end++;
        return Encoding.ASCII.GetString(data, (int)offset, (int)(end - offset));
    }
}
