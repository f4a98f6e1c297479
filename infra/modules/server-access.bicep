// Server updates in one resource group: the custom server operator role at
// this resource group only.

@description('Principal id of the handler identity.')
param principalId string

@description('Name (GUID) of the custom server operator role.')
@minLength(36)
@maxLength(36)
param roleDefinitionName string

// CMK rotation server operator: GET and PATCH the servers' dataEncryption
// (the update's status is read through the discovery role, at subscription
// scope).
resource serverOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleDefinitionName)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionName)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
