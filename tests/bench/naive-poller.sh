#!/usr/bin/env bash
# naive-poller.sh: the check an admin would otherwise write, for comparison
# with s3mond (tests/bench). Every cycle it gets a token, re-reads every
# mailbox, every warning/error trace log of the last day and every workflow
# and custom plug-in step (all pages), then joins them with jq: alerts
# carrying -2147220956, their mailbox, and the synchronous workflows and steps
# on email Create. It is not a strawman: it asks for the same columns as
# s3mond ($select) and filters on the server where that is obvious; it only
# lacks watermarks and a cache, which is what the comparison is about.
#
#   naive-poller.sh ENV_URL TOKEN_URL CLIENT_ID SECRET_FILE [CYCLES [INTERVAL]]
#
# CYCLES (default 1) cycles, INTERVAL seconds apart (default 0). One summary
# line per cycle on stdout.
set -euo pipefail

env_url=$1 token_url=$2 client_id=$3 secret_file=$4 cycles=${5:-1} interval=${6:-0}
api=$env_url/api/data/v9.2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# fetch NAME URL [PREFER]: every page of URL into $work/NAME.json (one array).
fetch() {
	local name=$1 url=$2 prefer=${3:-odata.maxpagesize=5000} n=0
	rm -f "$work/$name".page.*
	while [ -n "$url" ]; do
		curl -sS --fail -o "$work/$name.page.$n" -H "Authorization: Bearer $token" \
			-H 'Accept: application/json' -H 'OData-MaxVersion: 4.0' -H 'OData-Version: 4.0' \
			-H "Prefer: $prefer" "$url"
		url=$(jq -r '."@odata.nextLink" // empty' "$work/$name.page.$n")
		n=$((n + 1))
	done
	jq -s '[.[].value[]]' "$work/$name".page.* >"$work/$name.json"
}

for ((cycle = 1; cycle <= cycles; cycle++)); do
	token=$(tr -d '\r\n' <"$secret_file" | curl -sS --fail -d grant_type=client_credentials -d client_id="$client_id" \
		--data-urlencode client_secret@- --data-urlencode scope="$env_url/.default" \
		"$token_url" | jq -r .access_token)
	since=$(date -u -d '1 day ago' +%Y-%m-%dT%H:%M:%SZ)

	fetch mailboxes "$api/mailboxes?\$select=mailboxid,name,emailaddress,incomingemailstatus,lastsyncerrorcode,lastsyncerror,lastsyncerroroccurredon,lastsuccessfulsynccompletedon,modifiedon"
	fetch tracelogs "$api/tracelogs?\$select=tracelogid,_regardingobjectid_value,level,text,errordetails,createdon,modifiedon&\$filter=modifiedon%20ge%20$since%20and%20level%20ge%202" \
		'odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname",odata.maxpagesize=5000'
	fetch workflows "$api/workflows?\$select=workflowid,name,_parentworkflowid_value,category,type,statecode,mode,primaryentity,triggeroncreate,triggeronupdateattributelist,syncworkflowlogonfailure,modifiedon&\$filter=category%20eq%200%20and%20(type%20eq%201%20or%20type%20eq%202)"
	fetch steps "$api/sdkmessageprocessingsteps?\$select=sdkmessageprocessingstepid,name,mode,stage,statecode,customizationlevel,modifiedon&\$filter=customizationlevel%20eq%201&\$expand=sdkmessageid(%24select%3Dname),sdkmessagefilterid(%24select%3Dprimaryobjecttypecode),plugintypeid(%24select%3Dtypename)"

	jq -n -r --slurpfile mb "$work/mailboxes.json" --slurpfile tl "$work/tracelogs.json" \
		--slurpfile wf "$work/workflows.json" --slurpfile st "$work/steps.json" --argjson cycle "$cycle" '
		($mb[0] | map({key: .mailboxid, value: .name}) | from_entries) as $names
		| ($tl[0] | map(select((.text // "") + (.errordetails // "") | contains("-2147220956")))) as $alerts
		| ($wf[0] | map(select(.type == 1 and .statecode == 1 and .mode == 1
		                       and .primaryentity == "email" and .triggeroncreate))) as $rtw
		| ($st[0] | map(select(.mode == 0 and .statecode == 0
		                       and .sdkmessageid.name == "Create"
		                       and (.sdkmessagefilterid.primaryobjecttypecode // "email") == "email"))) as $sync
		| ($alerts | map($names[._regardingobjectid_value] // "?") | unique | length) as $mailboxes
		| "cycle \($cycle): \($alerts | length) alerts on \($mailboxes) mailboxes, suspects: \($rtw | length) real-time workflows, \($sync | length) synchronous steps"'
	if ((cycle < cycles)); then
		sleep "$interval"
	fi
done
