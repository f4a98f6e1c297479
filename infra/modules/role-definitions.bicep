// Two custom roles for the handler identity, because no built-in role is
// narrow enough: "Contributor" on servers would also allow deleting them,
// and "Reader" reads every resource type. Both are assignable only at the
// scopes the deployment names.
targetScope = 'subscription'

@description('Appended to the role names so that several deployments in one tenant do not collide (role names are unique per tenant).')
@minLength(1)
param roleNameSuffix string

@description('Resource group ids where servers may be updated.')
@minLength(1)
param serverScopes array

@description('Subscription ids (as /subscriptions/<id>) where servers may be discovered.')
@minLength(1)
param discoveryScopes array

// Read a server and PATCH its dataEncryption, in the configured resource
// groups only. No delete, no other resource types, no data actions.
resource serverOperator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'cmk-rotation-server-operator', roleNameSuffix)
  properties: {
    roleName: 'CMK rotation server operator (${roleNameSuffix})'
    description: 'Update the customer-managed key of PostgreSQL flexible servers and follow the update.'
    type: 'CustomRole'
    assignableScopes: serverScopes
    permissions: [
      {
        actions: [
          'Microsoft.DBforPostgreSQL/flexibleServers/read'
          'Microsoft.DBforPostgreSQL/flexibleServers/write'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

// Resource Graph returns only resources the caller may read, so reading
// flexible servers is all discovery needs (Reader would expose everything).
// The status of an update lives at subscription scope
// (/subscriptions/{id}/providers/Microsoft.DBforPostgreSQL/locations/{region}/
// azureAsyncOperation/{id}), which an assignment on a resource group does
// not reach: reading it is granted here, where the servers are discovered.
// It reveals no more than the state of PostgreSQL operations.
resource serverReader 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'cmk-rotation-server-reader', roleNameSuffix)
  properties: {
    roleName: 'CMK rotation server reader (${roleNameSuffix})'
    description: 'Find PostgreSQL flexible servers and their key URIs through Resource Graph, and read the status of their updates.'
    type: 'CustomRole'
    assignableScopes: discoveryScopes
    permissions: [
      {
        actions: [
          'Microsoft.DBforPostgreSQL/flexibleServers/read'
          'Microsoft.DBforPostgreSQL/locations/azureAsyncOperation/read'
          'Microsoft.DBforPostgreSQL/locations/operationResults/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

// Role definition names (GUIDs): an assignment in another subscription
// refers to the role through its own subscription's id.
output serverOperatorRoleName string = serverOperator.name
output serverReaderRoleName string = serverReader.name
