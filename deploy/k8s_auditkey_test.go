package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// TestManifestPerPodAuditKey: each verifierd pod signs its audit events with
// its own key. verifierd's TPCLUSTER_AUDIT_KEY lies in a memory-backed
// volume that an init container fills from the Secret tpcluster-audit-keys
// by the pod's ordinal. The init container's command is run with a real sh
// (its mount paths moved into temporary directories): pod -2 gets
// audit-2.key as a 0400 file; a pod whose ordinal has no key fails and
// gets no file.
func TestManifestPerPodAuditKey(t *testing.T) {
	v := find(t, render(t), "StatefulSet", "tpcluster-verifierd")
	ps := v.Spec.Template.Spec
	c := ps.Containers[0]
	keyPath, literal := c.env("TPCLUSTER_AUDIT_KEY")
	if keyPath == "" || !literal {
		t.Fatal("verifierd sets no literal TPCLUSTER_AUDIT_KEY")
	}
	var keyVol string
	for _, m := range c.VolumeMounts {
		if m.MountPath == path.Dir(keyPath) {
			keyVol = m.Name
		}
	}
	if keyVol == "" {
		t.Fatalf("verifierd mounts nothing at %s (TPCLUSTER_AUDIT_KEY's directory)", path.Dir(keyPath))
	}
	volumes := map[string]string{} // name → "emptyDir" or the Secret's name
	for _, vol := range ps.Volumes {
		switch {
		case vol.EmptyDir != nil:
			volumes[vol.Name] = "emptyDir"
		case vol.Secret != nil:
			volumes[vol.Name] = vol.Secret.SecretName
		}
	}
	if volumes[keyVol] != "emptyDir" {
		t.Errorf("the audit key's volume %s is %q, want an emptyDir filled per pod", keyVol, volumes[keyVol])
	}

	var init *container
	for i, ic := range ps.InitContainers {
		for _, m := range ic.VolumeMounts {
			if m.Name == keyVol {
				init = &ps.InitContainers[i]
			}
		}
	}
	if init == nil {
		t.Fatalf("no init container writes volume %s", keyVol)
	}
	if _, literal := init.env("POD_NAME"); literal {
		t.Errorf("init container %s: POD_NAME is not from the downward API", init.Name)
	}
	if len(init.Command) != 3 || init.Command[0] != "sh" || init.Command[1] != "-c" {
		t.Fatalf("init container %s command %q: want sh -c SCRIPT", init.Name, init.Command)
	}
	script := init.Command[2]
	dirs := map[string]string{} // volume name → temporary directory
	var secretDir string
	for _, m := range init.VolumeMounts {
		dir := t.TempDir()
		dirs[m.Name] = dir
		script = strings.ReplaceAll(script, m.MountPath+"/", dir+"/")
		if volumes[m.Name] == "tpcluster-audit-keys" {
			secretDir = dir
		}
	}
	if secretDir == "" {
		t.Fatalf("init container %s mounts no Secret tpcluster-audit-keys", init.Name)
	}
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(secretDir, fmt.Sprintf("audit-%d.key", i)), []byte(fmt.Sprintf("key %d\n", i)), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	got := filepath.Join(dirs[keyVol], path.Base(keyPath))
	run := func(pod string) ([]byte, error) {
		cmd := exec.Command("sh", "-c", script)
		cmd.Env = []string{"POD_NAME=" + pod, "PATH=" + os.Getenv("PATH")}
		return cmd.CombinedOutput()
	}

	if out, err := run("tpcluster-verifierd-7"); err == nil {
		t.Errorf("pod tpcluster-verifierd-7 without audit-7.key: init succeeded, want a failure\n%s", out)
	}
	if _, err := os.Stat(got); err == nil {
		t.Errorf("pod tpcluster-verifierd-7 without audit-7.key got %s", got)
	}
	if out, err := run("tpcluster-verifierd-2"); err != nil {
		t.Fatalf("init for pod tpcluster-verifierd-2: %v\n%s", err, out)
	}
	data, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, []byte("key 2\n")) {
		t.Errorf("pod tpcluster-verifierd-2 got key %q, want audit-2.key's", data)
	}
	if fi, _ := os.Stat(got); fi.Mode().Perm() != 0o400 {
		t.Errorf("%s mode %v, want 0400", got, fi.Mode().Perm())
	}
}
