package awsdouble

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net/http"
	"strings"
)

const stsNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"

// AccountID is the double's account.
const AccountID = "123456789012"

// RoleID is the unique ID IAM would give role: AROA and 17 characters,
// the same for the same name.
func RoleID(role string) string {
	sum := sha256.Sum256([]byte(role))
	return "AROA" + strings.ToUpper(hex.EncodeToString(sum[:]))[:17]
}

// serveSTS answers GetCallerIdentity for an instance's role credentials
// as STS does: an EC2 role session's user ID is "<role ID>:<instance
// ID>", which IAM policies read as ${aws:userid}.
func (c *Cloud) serveSTS(w http.ResponseWriter, r *http.Request, action string) {
	if action != "GetCallerIdentity" {
		writeQueryError(w, stsNamespace, apiError{http.StatusBadRequest, "InvalidAction", fmt.Sprintf("Could not find operation %s", action)})
		return
	}
	id := callerInstance(r)
	c.mu.Lock()
	instance, ok := c.instances[id]
	c.mu.Unlock()
	if !ok {
		writeQueryError(w, stsNamespace, apiError{http.StatusForbidden, "InvalidClientTokenId", "The security token included in the request is invalid."})
		return
	}
	type result struct {
		UserID  string `xml:"UserId"`
		Account string `xml:"Account"`
		Arn     string `xml:"Arn"`
	}
	writeXML(w, http.StatusOK, struct {
		XMLName   xml.Name `xml:"GetCallerIdentityResponse"`
		Namespace string   `xml:"xmlns,attr"`
		Result    result   `xml:"GetCallerIdentityResult"`
		RequestID string   `xml:"ResponseMetadata>RequestId"`
	}{Namespace: stsNamespace, Result: result{RoleID(instance.Role) + ":" + id, AccountID,
		fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", AccountID, instance.Role, id)}, RequestID: requestID()})
}
